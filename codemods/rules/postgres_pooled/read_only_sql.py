"""Can this SQL text write? A deliberately conservative answer for PS101's transaction proof.

The pooled block commits on a clean exit where closing a legacy connection rolled back, so PS101 must know
whether a path left uncommitted work. A literal read-only ``SELECT`` cannot have; anything else (or
anything this check does not understand) counts as a write. A false alarm only costs the idiomatic
rewrite (PS102's compat rewrite still applies); a missed write would change what is committed.
"""

from __future__ import annotations

import re

# Any of these words (outside string literals and comments) means the statement may write or change the
# session; the list is deliberately broad: a false alarm only costs an idiomatic rewrite.
_WRITE_WORDS_TEXT = """
insert update delete merge create drop alter truncate grant revoke copy call lock set into nextval setval
do execute perform notify listen unlisten refresh vacuum analyze cluster reindex comment prepare deallocate
discard reset load import security begin commit rollback savepoint release pg_advisory_lock
pg_advisory_xact_lock pg_try_advisory_lock set_config
"""
# Words that may be followed by "(" in a read-only query: SQL keywords and built-in functions without
# side effects. A call of anything else (a user-defined function may write) makes the query "may write".
_READ_ONLY_CALLABLES_TEXT = """
select from where and or not in exists any all some as on join using values over filter within group by
order partition case when then else coalesce nullif greatest least count sum avg min max lower upper
length char_length trim ltrim rtrim substring substr replace concat concat_ws round floor ceil ceiling abs
sign sqrt power mod now date_trunc date_part extract to_char to_date to_timestamp age array_agg string_agg
json_agg jsonb_agg json_build_object jsonb_build_object row_to_json to_json to_jsonb cast row_number rank
dense_rank lag lead first_value last_value bool_and bool_or every array_length unnest generate_series lpad
rpad split_part position strpos left right md5 format date numeric decimal varchar char interval lateral
current_setting current_database current_schema version
"""
_WRITE_WORDS = frozenset(_WRITE_WORDS_TEXT.split())
_READ_ONLY_CALLABLES = frozenset(_READ_ONLY_CALLABLES_TEXT.split())


def is_read_only_sql(sql: str) -> bool:
    """True only for a single ``SELECT`` (or ``WITH ... SELECT``) that visibly cannot write."""
    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S)
    text = re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", " x ", text)
    text = text.strip().rstrip(";").strip().lower()
    if ";" in text or not re.match(r"^\(*\s*(select|with)\b", text):
        return False
    if set(re.findall(r"[a-z_][a-z0-9_$]*", text)) & _WRITE_WORDS:
        return False
    called = re.findall(r"([a-z_][a-z0-9_$.]*)\s*\(", text)
    return all(name in _READ_ONLY_CALLABLES for name in called)
