//! The device's settings from its provisioning partition (`qeaas` in `partitions.csv`), written
//! per device by `qeaas-provision` and parsed by `qeaas_device::provision`: one image serves
//! every device. The bytes are read once at boot and kept for the firmware's lifetime (the
//! session configuration borrows the CA, PSK and names from them).
//!
//! The not-before floor (`qeaas_device::floor`) lives in a partition of its own,
//! `qeaas_floor`, written by the device itself: [`FloorStore`].

use alloc::vec;

use esp_bootloader_esp_idf::partitions::{
    read_partition_table, PartitionEntry, PARTITION_TABLE_MAX_LEN,
};
use esp_hal::peripherals::FLASH;
use esp_storage::FlashStorage;
use qeaas_device::floor::Record;
use qeaas_device::provision::{ProvisionError, Provisioning, PARTITION_SIZE};

/// The partition's label in `partitions.csv`.
pub const LABEL: &str = "qeaas";
/// The partition's type in `partitions.csv`: 0x40, the first custom type (ESP-IDF leaves
/// 0x40-0xFE to applications' own data formats).
const QEAAS_TYPE: u8 = 0x40;

/// Why there are no provisioned settings.
#[derive(Debug)]
pub enum Missing {
    /// No `qeaas` partition of type 0x40 in the partition table (an image flashed without
    /// `partitions.csv`), or the flash could not be read.
    NoPartition,
    /// The partition holds no valid settings.
    Invalid(ProvisionError),
}

impl core::fmt::Display for Missing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Missing::NoPartition => write!(f, "no readable `{LABEL}` partition"),
            Missing::Invalid(e) => e.fmt(f),
        }
    }
}

/// The floor partition's label in `partitions.csv` (type 0x40, subtype 1, two sectors).
pub const FLOOR_LABEL: &str = "qeaas_floor";
/// One flash erase sector per slot of the floor.
const SECTOR: u32 = 4096;

/// Reads and parses the provisioning partition, and opens the floor's.
pub fn read(flash: FLASH<'static>) -> (Result<Provisioning<'static>, Missing>, FloorStore) {
    let mut storage = FlashStorage::new(flash);
    let (settings, floor) = {
        let mut table_buf = [0u8; PARTITION_TABLE_MAX_LEN];
        match read_partition_table(&mut storage, &mut table_buf) {
            Ok(table) => {
                let find = |label: &str| {
                    table
                        .iter()
                        .find(|p| p.raw_type() == QEAAS_TYPE && p.label_as_str() == label)
                };
                (find(LABEL), find(FLOOR_LABEL))
            }
            Err(_) => (None, None),
        }
    };
    let settings = settings
        .ok_or(Missing::NoPartition)
        .and_then(|entry| parse(entry, &mut storage));
    (settings, FloorStore::open(storage, floor))
}

fn parse(
    entry: PartitionEntry,
    storage: &mut FlashStorage<'static>,
) -> Result<Provisioning<'static>, Missing> {
    let mut region = entry.as_flash_region(storage);
    let len = region.partition_size().min(PARTITION_SIZE);
    let mut image = vec![0u8; len];
    region
        .read(0, &mut image)
        .map_err(|_| Missing::NoPartition)?;
    // Kept for ever: the configuration borrows from it.
    let image: &'static [u8] = image.leak();
    Provisioning::parse(image).map_err(Missing::Invalid)
}

/// The not-before floor in flash: two slots of one sector each, written alternately (see
/// `qeaas_device::floor::Record`). Without the partition (an image flashed with an older
/// partition table) the floor is 0 and never raised, and the boot says so.
pub struct FloorStore {
    storage: FlashStorage<'static>,
    entry: Option<PartitionEntry>,
    current: Option<Record>,
    next_slot: u32,
}

impl FloorStore {
    fn open(mut storage: FlashStorage<'static>, entry: Option<PartitionEntry>) -> Self {
        let (mut current, mut next_slot) = (None, 0);
        if let Some(e) = entry {
            let mut region = e.as_flash_region(&mut storage);
            let mut slots = [[0u8; Record::LEN]; 2];
            let read = (0..2).all(|i| region.read(i * SECTOR, &mut slots[i as usize]).is_ok());
            if read {
                let (r, next) = Record::newest([&slots[0], &slots[1]]);
                (current, next_slot) = (r, next as u32);
            }
        }
        Self {
            storage,
            entry,
            current,
            next_slot,
        }
    }

    /// True if the partition exists.
    pub fn present(&self) -> bool {
        self.entry.is_some()
    }

    /// The floor (Unix seconds; 0: none).
    pub fn floor(&self) -> u64 {
        self.current.map_or(0, |r| r.floor)
    }

    /// After a session verified a server certificate that starts at `not_before`: raises the
    /// floor to it if it is higher (erase the other slot, write, read back). The new floor, or
    /// `None` if it was not raised.
    pub fn advance(&mut self, not_before: u64) -> Option<u64> {
        let entry = self.entry?;
        let next = Record::advance(self.current, not_before)?;
        let mut region = entry.as_flash_region(&mut self.storage);
        let at = self.next_slot * SECTOR;
        let mut back = [0u8; Record::LEN];
        let written = region.erase(at, at + SECTOR).is_ok()
            && region.write(at, &next.encode()).is_ok()
            && region.read(at, &mut back).is_ok()
            && Record::decode(&back) == Some(next);
        if !written {
            return None;
        }
        self.current = Some(next);
        self.next_slot = 1 - self.next_slot;
        Some(next.floor)
    }
}
