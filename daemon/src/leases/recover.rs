//! After a failed commit: the table holds changes the database lacks, so
//! decisions stop (`Unavailable`) until it is reloaded from SQLite.

use std::sync::{Arc, Mutex};

use super::{Table, lock};
use crate::store::{Store, StoreError};

/// After a failed commit: stop decisions on the table (it holds changes the
/// database lacks) and reload it from SQLite, retrying until it loads.
pub(super) fn recover(table: &Arc<Mutex<Table>>, store: &Store) {
    lock(table).stale = true;
    let (table, store) = (Arc::clone(table), store.clone());
    tokio::spawn(async move {
        loop {
            match load_table(&store).await {
                Ok(fresh) => {
                    *lock(&table) = fresh;
                    tracing::info!("leases reloaded from the database after a failed commit");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot reload leases; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
}

pub(super) async fn load_table(store: &Store) -> Result<Table, StoreError> {
    let loaded = store.load().await?;
    Ok(Table::load(loaded.active, loaded.names, loaded.labels))
}
