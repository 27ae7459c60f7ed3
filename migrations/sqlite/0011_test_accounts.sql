-- Test accounts (`gateway admin user add-test`, `gateway check`; docs/design.md §3.10). A test
-- account is a doctor-kind account with no 医籍番号, so it can never be a real doctor's; its
-- signing tokens carry `"test": true`. No command changes the flag, and the check below keeps a
-- 医籍番号 off a test account whatever writes the row.
ALTER TABLE users ADD COLUMN test_account BOOLEAN NOT NULL DEFAULT FALSE
    CHECK (NOT test_account OR (kind = 'doctor' AND medical_reg_no IS NULL));
