//! The device's settings from its provisioning partition (`qeaas` in `partitions.csv`), written
//! per device by `qeaas-provision` and parsed by `qeaas_device::provision`: one image serves
//! every device. The bytes are read once at boot and kept for the firmware's lifetime (the
//! session configuration borrows the CA, PSK and names from them).

use alloc::vec;

use esp_bootloader_esp_idf::partitions::{read_partition_table, PARTITION_TABLE_MAX_LEN};
use esp_hal::peripherals::FLASH;
use esp_storage::FlashStorage;
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

/// Reads and parses the partition.
pub fn read(flash: FLASH<'static>) -> Result<Provisioning<'static>, Missing> {
    let mut storage = FlashStorage::new(flash);
    let mut table_buf = [0u8; PARTITION_TABLE_MAX_LEN];
    let table =
        read_partition_table(&mut storage, &mut table_buf).map_err(|_| Missing::NoPartition)?;
    let entry = table
        .iter()
        .find(|p| p.raw_type() == QEAAS_TYPE && p.label_as_str() == LABEL)
        .ok_or(Missing::NoPartition)?;
    let mut region = entry.as_flash_region(&mut storage);
    let len = region.partition_size().min(PARTITION_SIZE);
    let mut image = vec![0u8; len];
    region
        .read(0, &mut image)
        .map_err(|_| Missing::NoPartition)?;
    // Kept for ever: the configuration borrows from it.
    let image: &'static [u8] = image.leak();
    Provisioning::parse(image).map_err(Missing::Invalid)
}
