"""When the worker's handling of each post commits: a deferred trigger the pipeline installs in
the run's own database (nothing of it exists in Herald's schema).

The worker's enrichment sets a post's ``enriched_version``, whether its handler runs in the
inbox transaction or is registered as idempotent. A constraint trigger ``DEFERRABLE INITIALLY
DEFERRED`` on that update fires as the worker's transaction commits — after every statement of
the transaction — and records ``clock_timestamp()`` in ``bench_handled``: the "handled" time.
Only the commit record's flush comes after it (0.5 to 1 ms here), and the row becomes visible only
if the transaction commits. A notification (``pg_notify``, delivered strictly after the commit)
was measured and not used: PostgreSQL serialises the commits of notifying transactions on one
lock, and 16 connections committing together fell from 2,400-3,200 to 950-1,090 commits a
second — it would have capped the very rate under test. (Decision record 0026.)
"""

from __future__ import annotations

INSTALL = """
CREATE TABLE IF NOT EXISTS bench_handled (post_id uuid NOT NULL, handled_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS bench_handled_post_idx ON bench_handled (post_id);
CREATE OR REPLACE FUNCTION bench_record_handled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO bench_handled (post_id, handled_at) VALUES (NEW.id, clock_timestamp());
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS bench_handled ON posts;
CREATE CONSTRAINT TRIGGER bench_handled AFTER UPDATE OF enriched_version ON posts
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN (NEW.enriched_version IS DISTINCT FROM OLD.enriched_version)
  EXECUTE FUNCTION bench_record_handled();
"""

#: Posts (of ``$1``) whose handling has committed.
HANDLED_COUNT = "SELECT count(DISTINCT post_id) FROM bench_handled WHERE post_id = ANY($1::uuid[])"

#: Per created post of ``$1``, in commit order: the API's commit (``occurred``), the relay's claim
#: of its ``post.created`` (``published``), every handled time, and the relay's claim of the
#: ``post.enriched`` the worker emitted (``enriched_claimed``), all in epoch seconds.
STAGE_TIMES = """
SELECT o.aggregate_id::text AS post_id,
       extract(epoch FROM (o.payload->>'occurred_at')::timestamptz)::float8 AS occurred,
       extract(epoch FROM o.published_at)::float8 AS published,
       (SELECT array_agg(extract(epoch FROM h.handled_at)::float8) FROM bench_handled h
         WHERE h.post_id = o.aggregate_id) AS handled,
       e.claimed AS enriched_claimed
FROM outbox o
LEFT JOIN (
    SELECT aggregate_id, extract(epoch FROM min(published_at))::float8 AS claimed FROM outbox
    WHERE event_type = 'post.enriched' AND aggregate_id = ANY($1::uuid[]) GROUP BY aggregate_id
) e ON e.aggregate_id = o.aggregate_id
WHERE o.event_type = 'post.created' AND o.aggregate_id = ANY($1::uuid[])
ORDER BY o.id
"""
