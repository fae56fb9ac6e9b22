-- Implicit feedback (docs/learning.md): feedback inferred from behaviour (a regeneration, an
-- abandoned stream) is marked, so estimators can include or exclude it. Every row kept
-- before this version was given explicitly.
ALTER TABLE decision_feedback
    ADD COLUMN implicit boolean NOT NULL DEFAULT false;
