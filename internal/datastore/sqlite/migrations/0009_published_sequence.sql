-- The spiffe_sequence of the first local bundle that held each authority,
-- so that rotation knows which partners fetched it across restarts and
-- replicas. 0: not known (stored before this version).
ALTER TABLE authorities ADD COLUMN published_sequence INTEGER NOT NULL DEFAULT 0;
