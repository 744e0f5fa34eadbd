-- SNMPv3 credentials of a device, and two more kinds of target: `host` (the agent's own
-- machine) and `discovery` (an ARP sweep of one network of the school).
--
-- The passphrases are kept as given (the agent needs them to derive its USM keys); the API and
-- the audit trail never show them.

ALTER TABLE devices ADD COLUMN snmp_version TEXT NOT NULL DEFAULT '2c' CHECK (snmp_version IN ('2c', '3'));
ALTER TABLE devices ADD COLUMN snmp_user TEXT;
ALTER TABLE devices ADD COLUMN snmp_auth_protocol TEXT;
ALTER TABLE devices ADD COLUMN snmp_auth_passphrase TEXT;
ALTER TABLE devices ADD COLUMN snmp_priv_protocol TEXT;
ALTER TABLE devices ADD COLUMN snmp_priv_passphrase TEXT;

ALTER TABLE devices DROP CONSTRAINT devices_probe_check;
ALTER TABLE devices ADD CONSTRAINT devices_probe_check
    CHECK (probe IN ('icmp', 'tcp', 'http', 'snmp', 'host', 'discovery'));
