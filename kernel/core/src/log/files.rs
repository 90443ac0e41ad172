//! File helpers shared by sealing (append), retention and recovery.

use crate::limits::BLOCK_BYTES;
use crate::offset_index::{OffsetIndex, SegmentSummary};
use crate::segment::index_name;
use crate::storage::{IoError, IoErrorKind, Storage, StorageFile};

pub(super) async fn remove_if_present<S: Storage>(
    storage: &S,
    name: &str,
) -> Result<(), (String, IoError)> {
    match storage.remove(name).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind == IoErrorKind::NotFound => Ok(()),
        Err(error) => Err((name.to_string(), error)),
    }
}

pub(super) async fn write_index_file<S: Storage>(
    storage: &S,
    index: &OffsetIndex,
    summary: &SegmentSummary,
) -> Result<(), (String, IoError)> {
    let name = index_name(summary.base_offset);
    remove_if_present(storage, &name).await?;
    let with_name = |error| (name.clone(), error);
    let file = storage.create(&name).await.map_err(with_name)?;
    let bytes = index.encode_file(summary, BLOCK_BYTES);
    let mut buf = file.alloc_buf(bytes.len());
    buf.as_mut().copy_from_slice(&bytes);
    file.write_at(buf, 0).await.map_err(with_name)?;
    file.sync().await.map_err(with_name)
}
