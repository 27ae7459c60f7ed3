-- Login IDs are unique per clinic after NFKC and case folding, and a 医籍番号 (medical
-- registration number) is unique per clinic (issue 15, item 5). Keep in step with
-- ../sqlite/0009_login_id_folded.sql.
--
-- login_folded is computed in Rust (gateway/src/login_id.rs: NFKC, full case fold, NFKC), which
-- neither database can do in SQL the same way, so it starts empty here and Store::migrate fills it
-- straight after this file (and again at every start, for rows an older version wrote meanwhile).
-- NULLs never collide in a unique index, so existing rows do not trip the index before that.
-- Existing rows whose login IDs fold alike are never merged: the fill refuses, names the
-- accounts and changes nothing (see docs/security/login-ids.md).
ALTER TABLE users ADD COLUMN login_folded TEXT;
CREATE UNIQUE INDEX users_clinic_login_folded_key ON users (clinic_id, login_folded);

-- Staff have no 医籍番号 (NULL); among doctors, one number per clinic. If existing doctors share
-- one, this index cannot be built: the migration is rolled back and Store::migrate reports the
-- accounts concerned.
CREATE UNIQUE INDEX users_clinic_medical_reg_no_key ON users (clinic_id, medical_reg_no) WHERE medical_reg_no IS NOT NULL;
