-- Counts the changes to a school's devices and open incidents. The report writers remember
-- those between groups and use the memory only while this stands still (see
-- server/src/devices/samples.rs); whatever changes them bumps it in the same transaction.
ALTER TABLE schools ADD COLUMN devices_version INTEGER NOT NULL DEFAULT 0;
