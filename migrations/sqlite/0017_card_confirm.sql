-- Confirming with a linked card to add another authenticator (docs/design.md §3.6): a card
-- challenge of purpose 'confirm' is a presence check with one of the doctor's linked cards, and
-- `then_link` names what the doctor links after it ('fido', 'hpki', 'jpki'). Challenges live
-- 120 s, so the table is made again rather than copied (SQLite cannot change a CHECK in place):
-- a challenge pending during the upgrade is asked for again.
DROP TABLE card_challenges;
CREATE TABLE card_challenges (
    session_hash        BLOB NOT NULL PRIMARY KEY, -- SHA-256 of the browser-session id
    user_id             TEXT NOT NULL REFERENCES users (id),
    clinic_id           TEXT NOT NULL REFERENCES clinics (id),
    kind                TEXT NOT NULL CHECK (kind IN ('hpki', 'jpki')),
    purpose             TEXT NOT NULL CHECK (purpose IN ('signing_session', 'link', 'confirm')),
    challenge           BLOB NOT NULL,             -- 32 random bytes
    enrollment_code_id  TEXT,                      -- a link authorised by this code
    linked_via          TEXT,                      -- a link authorised by '<kind>:<authenticator id>'
    expires_at          BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    then_link           TEXT CHECK (then_link IN ('fido', 'hpki', 'jpki')), -- purpose 'confirm': what is linked next
    CHECK ((purpose = 'confirm') = (then_link IS NOT NULL))
);
CREATE INDEX card_challenges_expires_at ON card_challenges (expires_at);
