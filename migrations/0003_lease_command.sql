-- The command `portctl run` started for a lease: its pid and start time. It
-- leads a process group of its own, so its pid is that group's id, and the
-- group's members belong to the lease even without the tag (a server that
-- clears its environment, such as nginx).
ALTER TABLE leases ADD COLUMN command_pid INTEGER;
ALTER TABLE leases ADD COLUMN command_start_ticks INTEGER;
-- `release --keep`: the boot clock tick of the release. Processes of the
-- lease that started by then are left running; later ones are orphans.
ALTER TABLE leases ADD COLUMN kept_ticks INTEGER;
