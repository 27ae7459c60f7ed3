-- The EMR's own id for each user (docs/design.md §3.16): SCIM's `externalId`, and what an
-- upstream OpenID Connect sign-in maps its `sub` (or a configured claim) to. Unique within a
-- clinic; users made by the admin CLI have none.
ALTER TABLE users ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX users_clinic_external_id_key ON users (clinic_id, external_id) WHERE external_id IS NOT NULL;
