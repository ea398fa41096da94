//! `portctl uninstall`: stop and disable the systemd user units when a user
//! manager answers, then remove them (and the links `enable` made).
//! Running it when nothing is installed is harmless.

use clap::Args;

use crate::error::ClientError;
use crate::units::{
    self, ENABLE_LINKS, SERVICE_UNIT, SOCKET_UNIT, manager_answers, systemctl, systemctl_line,
};

#[derive(Debug, Args)]
#[command(after_help = "\
Leases stay in the database: portctl starts portd on demand again, or run
`portctl install` to go back to systemd.")]
pub struct UninstallArgs {}

pub fn run(_args: UninstallArgs) -> Result<(), ClientError> {
    let dir = units::user_unit_dir()?;
    let unit_files = [dir.join(SOCKET_UNIT), dir.join(SERVICE_UNIT)];
    let installed = unit_files.iter().any(|p| p.symlink_metadata().is_ok());
    let manager = manager_answers();
    if manager && installed {
        systemctl(&["disable", "--now", SOCKET_UNIT, SERVICE_UNIT])?;
    }
    let mut removed = 0;
    for path in ENABLE_LINKS.iter().map(|link| dir.join(link)) {
        if path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            removed += usize::from(units::remove_file(&path)?);
        }
    }
    for path in &unit_files {
        if units::remove_file(path)? {
            removed += 1;
            println!("removed: {}", path.display());
        }
    }
    if removed == 0 {
        println!("portd's units are not installed in {}", dir.display());
        return Ok(());
    }
    if manager {
        systemctl(&["daemon-reload"])?;
    } else if installed {
        println!("No systemd user manager answers; if one still runs these units, run:");
        println!("  {}", systemctl_line(&["stop", SOCKET_UNIT, SERVICE_UNIT]));
        println!("  {}", systemctl_line(&["daemon-reload"]));
    }
    Ok(())
}
