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

-- SQLite cannot ALTER a CHECK constraint. Widening one (every stored row still satisfies it)
-- is the case SQLite's documentation allows by editing the schema text in place ("Making Other
-- Kinds Of Table Schema Changes", https://www.sqlite.org/lang_altertable.html#otheralter),
-- rather than copying the table, which would have to name every column other migrations add.
-- It runs after the ADD COLUMNs (they rewrite the same text); the CREATE/DROP bumps the schema
-- cookie so other connections reload, and RESET reloads this one.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, 'CHECK (probe IN (''icmp'', ''tcp'', ''http'', ''snmp''))',
                          'CHECK (probe IN (''icmp'', ''tcp'', ''http'', ''snmp'', ''host'', ''discovery''))')
 WHERE type = 'table' AND name = 'devices';
CREATE TABLE khetnet_schema_bump_0007 (x INTEGER);
DROP TABLE khetnet_schema_bump_0007;
PRAGMA writable_schema = RESET;
