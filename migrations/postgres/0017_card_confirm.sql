-- Confirming with a linked card to add another authenticator (docs/design.md §3.6): a card
-- challenge of purpose 'confirm' is a presence check with one of the doctor's linked cards, and
-- `then_link` names what the doctor links after it ('fido', 'hpki', 'jpki').
ALTER TABLE card_challenges DROP CONSTRAINT card_challenges_purpose_check;
ALTER TABLE card_challenges ADD CONSTRAINT card_challenges_purpose_check
    CHECK (purpose IN ('signing_session', 'link', 'confirm'));
ALTER TABLE card_challenges ADD COLUMN then_link TEXT CHECK (then_link IN ('fido', 'hpki', 'jpki'));
ALTER TABLE card_challenges ADD CONSTRAINT card_challenges_then_link_check_purpose
    CHECK ((purpose = 'confirm') = (then_link IS NOT NULL));
