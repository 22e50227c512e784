#!/usr/bin/env python3
# Draws firmware-esp32/frontier.svg: the device's peak DTLS session heap against its setup +
# handshake instructions, for each wolfSSL setting and configuration measured in qemu
# (QEAAS_DEVICE_FIGURES=/tmp/figs.txt cargo test -p qeaas-coap --test device_qemu; the figures
# are the FIG lines' setup_instr + handshake_instr and handshake_heap_peak - heap_before, copied
# here by hand; firmware-esp32/README.md has them in tables). x: 0-200 M, y: 0-60 kB.
# Usage: scripts/firmware-frontier.py firmware-esp32/frontier.svg
import sys
pts = [  # label, instructions, heap B, colour (each measured with device_qemu.rs, 2026-12-07)
 ("before (earlier round): VERIFY_SMALL_MEM, MAKEKEY_SMALL_MEM, MLDSA_DYNAMIC_KEYS", 52347611, 36448, "#1f77b4"),
 ("before, without WOLFSSL_MLDSA_VERIFY_SMALL_MEM (earlier round)", 52486178, 57368, "#d62728"),
 ("before, without WOLFSSL_MLKEM_MAKEKEY_SMALL_MEM (earlier round)", 52343493, 36448, "#2ca02c"),
 ("not kept: device wolfSSL at -O2", 54820420, 36448, "#ff7f0e"),
 ("not kept: ChaCha20 then AES-128-GCM offered (server picks AES-128)", 42423829, 36432, "#17becf"),
 ("1. ChaCha20-Poly1305 only (certificate configurations)", 19472588, 35544, "#e377c2"),
 ("2. + incremental APT cut-off", 13711607, 35544, "#aec7e8"),
 ("3. + WOLFSSL_MLKEM_DYNAMIC_KEYS", 13688739, 35544, "#98df8a"),
 ("4. + VERIFY_SMALLEST_MEM, ML-DSA-44 only", 14134374, 32600, "#c49c94"),
 ("ML-KEM-512 + ML-DSA-44, committed: 4 + session tickets (NO_ASN_TIME_CHECK)", 14296806, 29128, "#000000"),
 ("ML-KEM-512 + ML-DSA-44, resumed after a server restart", 4850040, 16254, "#393b79"),
 ("with an ECDSA client certificate", 44236998, 29726, "#9467bd"),
 ("PSK + ML-KEM-512", 8922903, 24014, "#8c564b"),
 ("PSK + ML-KEM-512, reconnected after a server restart", 7190818, 14168, "#c7c7c7"),
 ("ML-KEM-512 + ECDSA", 120959110, 24073, "#7f7f7f"),
 ("P-256 + ECDSA", 177199215, 15710, "#bcbd22"),
]
X0, X1, Y0, Y1 = 70.0, 740.0, 370.0, 30.0
def x(m): return X0 + (X1 - X0) * m / 200.0
def y(kb): return Y0 - (Y0 - Y1) * kb / 60.0
H = 420 + 15 * len(pts) + 10
o = []
o.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{H}" font-family="sans-serif" font-size="11">')
o.append('<title>qeaas device: peak session heap against setup + handshake instructions (qemu rv32imc, -icount), measured 2026-12-07</title>')
o.append(f'<rect width="760" height="{H}" fill="white"/>')
o.append(f'<rect x="{X0}" y="{y(32.768)}" width="{x(30)-X0}" height="{Y0-y(32.768)}" fill="#e8f5e9" stroke="#2e7d32" stroke-dasharray="4 3"/>')
o.append(f'<text x="{X0+4}" y="{y(32.768)+14}" fill="#2e7d32">goal: &lt;= 30 M, &lt;= 32 kB</text>')
for v in range(0, 201, 25):
    o.append(f'<line x1="{x(v)}" y1="{Y0}" x2="{x(v)}" y2="{Y0+4}" stroke="black"/><text x="{x(v)}" y="{Y0+16}" text-anchor="middle">{v}</text>')
for v in range(0, 61, 10):
    o.append(f'<line x1="{X0-4}" y1="{y(v)}" x2="{X0}" y2="{y(v)}" stroke="black"/><text x="{X0-6}" y="{y(v)+4}" text-anchor="end">{v}</text>')
o.append(f'<line x1="{X0}" y1="{Y0}" x2="{X1}" y2="{Y0}" stroke="black"/><line x1="{X0}" y1="{Y0}" x2="{X0}" y2="{Y1}" stroke="black"/>')
o.append('<text x="405.0" y="408" text-anchor="middle">setup + handshake, million instructions</text>')
o.append('<text x="16" y="200.0" text-anchor="middle" transform="rotate(-90 16 200.0)">peak session heap, kB</text>')
for i, (label, ins, heap, c) in enumerate(pts):
    ly = 430 + 15 * i
    o.append(f'<circle cx="{x(ins/1e6):.1f}" cy="{y(heap/1000):.1f}" r="4" fill="{c}"/>')
    o.append(f'<rect x="70" y="{ly}" width="9" height="9" fill="{c}"/><text x="84" y="{ly+8}">{label}: {ins/1e6:.2f} M, {heap} B</text>')
o.append('</svg>')
open(sys.argv[1], "w").write("\n".join(o) + "\n")
