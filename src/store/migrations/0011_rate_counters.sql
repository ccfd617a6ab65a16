-- Rate-limit counters shared by every replica on one PostgreSQL database
-- (issue 11): one row per key and fixed window, bumped by an atomic
-- upsert. A limit reads the current and the previous window (a sliding
-- estimate, as the in-process limiter). Rows older than two windows are
-- purged by the sweeper. SQLite deployments (one process) keep counting in
-- memory and leave this table empty.
CREATE TABLE rate_counters (
    tenant        TEXT NOT NULL,
    key           TEXT NOT NULL,
    window_start  INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (tenant, key, window_start)
);
CREATE INDEX rate_counters_age ON rate_counters (tenant, window_start);
