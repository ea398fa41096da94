//! Reads of `labels`: the label each project goes by in the proxy's host
//! names.

use super::{Reader, StoreError};
use crate::lease::ProjectLabel;

/// A label as stored.
#[derive(Debug, sqlx::FromRow)]
struct LabelRow {
    project: String,
    label: String,
}

impl Reader {
    /// Every project's label, by project.
    pub async fn labels(&mut self) -> Result<Vec<ProjectLabel>, StoreError> {
        let rows: Vec<LabelRow> =
            sqlx::query_as("SELECT project, label FROM labels ORDER BY project")
                .fetch_all(self.conn())
                .await?;
        Ok(rows
            .into_iter()
            .map(|row| ProjectLabel {
                project: row.project,
                label: row.label,
            })
            .collect())
    }
}
