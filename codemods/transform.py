"""The per-file transform: bytes in, bytes (or a reason code) out.

Every caller (the runner, the CLI, the test harness, the guide checks) goes through
:func:`transform_bytes`, so the rules never see encodings, BOMs or line endings, and the guarantees the
user relies on are enforced in exactly one place:

* the file is decoded the way Python itself decodes it (PEP 263 coding cookie, UTF-8 BOM) and re-encoded
  the same way, BOM included;
* a file with mixed line endings, a syntax error or undecodable bytes is left alone (``error`` says why),
  because any rewrite of such a file could not be checked;
* a rule that raises leaves the file untouched (``rule-crashed``) instead of stopping the run;
* the output must parse again, or the whole file is rolled back (``output-does-not-parse``);
* a file the interpreter does not compile is refused (``syntax-error``), even if LibCST would parse it;
* a file whose CPython tree is too large for LibCST to get through within the time limit is refused at
  once (``timeout``, :func:`codemods.limits.predicted_timeout`) rather than after burning its budget;
* a file Python compiles but nested too deep for LibCST even with the deep stack LibCST's work gets
  (:func:`codemods.limits.run_deep`) is refused (``too-deeply-nested``): a ``RecursionError`` counts as
  the input's when the file nests at least ``DEEP_NESTING`` levels, and as a bug below that;
* any other exception while handling a file (a bug, a timeout, memory) is that file's error
  (``internal-error``, ``timeout``, ``memory-limit``), never the run's.
"""

from __future__ import annotations

import ast
import bisect
import difflib
import functools
import io
import tokenize
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import libcst as cst
from libcst.codemod import Codemod, CodemodCommand, CodemodContext, SkipFile
from libcst.codemod.visitors import AddImportsVisitor, RemoveImportsVisitor
from libcst.metadata import MetadataWrapper

from codemods.cst.imports.placement import GroupedAddImports, place_changed_imports
from codemods.limits import (
    DEEP_NESTING,
    FileTimeout,
    Limits,
    measure,
    nesting_depth,
    predicted_timeout,
    run_deep,
)
from codemods.rules.base import SUPPRESSIONS_KEY, PoolshiftRule, RuleOptions, Site
from codemods.suppressions import MARKER, apply_suppressions

__all__ = [
    "CRASH_CODES",
    "ERROR_CODES",
    "FileResult",
    "PositionMap",
    "SourceText",
    "decode_source",
    "line_ending_of",
    "rules_text",
    "transform_bytes",
]

#: Reason codes for a file left untouched, with the advice the report shows next to them.
ERROR_CODES: dict[str, str] = {
    "syntax-error": "the file does not parse; fix it (or exclude it) and run again",
    "undecodable": "the bytes do not match the file's declared or default encoding",
    "mixed-line-endings": "the file mixes CRLF/LF/CR line endings; normalise them first",
    "output-does-not-parse": "a rewrite produced invalid code; the file was rolled back (please report it)",
    "rule-crashed": "a rule raised an exception on this file; the file was left untouched (please report it)",
    "not-idempotent": "a second run changed the output again; the file was left untouched (please report it)",
    "unwritable": "the new content could not be written (permissions, or the file changed during the run)",
    "file-too-large": "the file is over the size limit per file; it was not parsed (see the guide's limits)",
    "timeout": "analysing the file took longer than the time limit per file; it was left untouched",
    "memory-limit": "analysing the file needed more memory than the limit per worker; it was left untouched",
    "too-deeply-nested": "the file nests deeper than poolshift can analyse; it was left untouched (see the "
    "guide's limits)",
    "internal-error": "poolshift crashed on this file; it was left untouched and the run went on (please "
    "report it)",
}

#: Errors that mean poolshift itself failed on a file (a bug to report), not that the file is unsuitable;
#: the command line gives them their own exit code.
CRASH_CODES = frozenset({"rule-crashed", "internal-error", "not-idempotent", "output-does-not-parse"})


@dataclass
class FileResult:
    """What the rules did (or would do) to one file.

    ``output`` is ``None`` when nothing changed *or* when the file was left untouched because of an error;
    ``error`` tells the two apart. ``sites`` is empty for a file with an error: its rewrites were discarded,
    so reporting them as migrated (or migratable) would be a lie.
    """

    path: str
    original: bytes
    output: bytes | None
    sites: list[Site] = field(default_factory=list)
    error: str | None = None
    error_detail: str = ""

    @property
    def changed(self) -> bool:
        return self.output is not None


@dataclass(frozen=True)
class SourceText:
    """Decoded source plus what is needed to write it back byte-compatibly."""

    text: str
    encoding: str  # a codec name; "utf-8-sig" means the file starts with a UTF-8 BOM
    newline: str  # "\n", "\r\n" or "\r" (the file's only line ending; "\n" when it has none)


class SourceError(Exception):
    """A file that cannot be safely rewritten; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def line_ending_of(data: bytes) -> str | None:
    """The single line ending used in ``data`` ("\\n" when there is none), or ``None`` when mixed.

    Counting on bytes is safe for every encoding Python accepts for source files (they are all
    ASCII-compatible, PEP 263), so this runs before any decoding.
    """
    crlf = data.count(b"\r\n")
    lone_lf = data.count(b"\n") - crlf
    lone_cr = data.count(b"\r") - crlf
    used = [ending for ending, count in (("\r\n", crlf), ("\n", lone_lf), ("\r", lone_cr)) if count]
    if len(used) > 1:
        return None
    return used[0] if used else "\n"


def decode_source(data: bytes) -> SourceText:
    """Decode ``data`` exactly as the interpreter would, or raise :class:`SourceError`."""
    newline = line_ending_of(data)
    if newline is None:
        raise SourceError("mixed-line-endings", "the file mixes line endings")
    try:
        # detect_encoding implements PEP 263 and the BOM rules (a BOM plus a non-UTF-8 cookie is an error).
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        raise SourceError("undecodable", str(exc)) from exc
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise SourceError("undecodable", f"{encoding}: {exc}") from exc
    return SourceText(text=text, encoding=encoding, newline=newline)


def rules_text(source: SourceText) -> str:
    """The text rules and LibCST see: the file's only line ending turned into "\\n".

    The file has a single line ending (mixed ones are refused), so converting back in ``_encode`` is exact;
    and LibCST mishandles lone-CR files (it drops the last CR).
    """
    if source.newline == "\n":
        return source.text
    return source.text.replace("\r\n", "\n").replace("\r", "\n")


class PositionMap:
    """Maps a (line, column) of a rewritten text back to the text it was rewritten from.

    When several rules run on one file, each rule sees the previous rule's output and records positions
    in it; an import added at the top shifts every later line. The user must get positions in *their*
    file, so each site is mapped back through a line alignment (difflib) of the two texts:

    * a line both texts share (an "equal" block) maps exactly, column unchanged;
    * a line an earlier rule rewrote maps to the original line at the same offset in that hunk (the
      hunk's last original line when the hunk grew); when the lines correspond one to one the column is
      mapped through a character alignment of the two lines, so a longer callee earlier on the line does
      not shift the column;
    * a line that exists only in the rewritten text (an inserted import) maps to the original line the
      insertion was placed above (the last line at the end of the file), column 1.

    The common prefix and suffix are stripped before aligning: rewrites are local, and SequenceMatcher
    without autojunk (which would misalign files full of blank lines) is quadratic in the worst case.
    """

    def __init__(self, original: str, rewritten: str) -> None:
        self._original = original.splitlines()
        self._rewritten = rewritten.splitlines()
        # opcodes as (j1, j2, i1, i2, tag): rewritten[j1:j2] corresponds to original[i1:i2].
        self._blocks = self._align(self._original, self._rewritten)
        self._starts = [block[0] for block in self._blocks]

    @staticmethod
    def _align(original: list[str], rewritten: list[str]) -> list[tuple[int, int, int, int, str]]:
        prefix = 0
        limit = min(len(original), len(rewritten))
        while prefix < limit and original[prefix] == rewritten[prefix]:
            prefix += 1
        suffix = 0
        while (
            suffix < limit - prefix
            and original[len(original) - 1 - suffix] == rewritten[len(rewritten) - 1 - suffix]
        ):
            suffix += 1
        middle = difflib.SequenceMatcher(
            None,
            original[prefix : len(original) - suffix],
            rewritten[prefix : len(rewritten) - suffix],
            autojunk=False,
        ).get_opcodes()
        blocks = [(0, prefix, 0, prefix, "equal")] if prefix else []
        blocks += [
            (j1 + prefix, j2 + prefix, i1 + prefix, i2 + prefix, tag) for tag, i1, i2, j1, j2 in middle
        ]
        if suffix:
            blocks.append(
                (len(rewritten) - suffix, len(rewritten), len(original) - suffix, len(original), "equal")
            )
        return [block for block in blocks if block[0] < block[1]]  # deletions hold no rewritten line

    def locate(self, line: int, column: int) -> tuple[int, int]:
        """The original (line, column), both 1-based like Site's, of a rewritten (line, column)."""
        index = line - 1
        position = bisect.bisect_right(self._starts, index) - 1
        if position < 0 or not self._blocks or index >= self._blocks[position][1]:
            return line, column  # outside the text (should not happen): leave it as the rule said
        j1, _, i1, i2, tag = self._blocks[position]
        offset = index - j1
        if tag == "equal":
            return i1 + offset + 1, column
        if i1 == i2:  # inserted lines: no original line of their own
            return min(i1, max(len(self._original) - 1, 0)) + 1, 1
        original_index = i1 + min(offset, i2 - i1 - 1)
        if offset < i2 - i1:
            column = self._map_column(self._rewritten[index], self._original[original_index], column)
        return original_index + 1, column

    @staticmethod
    def _map_column(rewritten: str, original: str, column: int) -> int:
        char = column - 1
        for tag, i1, _i2, j1, j2 in difflib.SequenceMatcher(
            None, original, rewritten, autojunk=False
        ).get_opcodes():
            if j1 <= char < j2:
                return (i1 + char - j1 if tag == "equal" else i1) + 1
        return min(column, len(original) + 1)

    def site(self, site: Site) -> Site:
        line, column = self.locate(site.line, site.column)
        return site if (line, column) == (site.line, site.column) else replace(site, line=line, column=column)


def _encode(text: str, source: SourceText) -> bytes:
    """Re-encode with the original encoding and line ending.

    LibCST keeps existing line endings and uses the module's detected newline for new lines, so this
    normalisation is a safety net: a rule that builds a multi-line string with "\\n" must not turn a CRLF
    file into a mixed one.
    """
    if source.newline != "\n":
        # The rules worked on "\n"-only text (see transform_bytes); a rule could still have built a string
        # with "\r\n" itself, hence the full normalisation.
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", source.newline)
    try:
        return text.encode(source.encoding)
    except UnicodeEncodeError as exc:
        raise SourceError(
            "output-does-not-parse", f"the rewritten text cannot be encoded as {source.encoding}: {exc}"
        ) from exc


def _parse(text: str) -> cst.Module:
    """LibCST's tree of ``text``, which the interpreter compiles (so a refusal is LibCST's limit or bug)."""
    try:
        return cst.parse_module(text)
    except cst.ParserSyntaxError as exc:
        # LibCST's parser gives up a few thousand levels deep (adjacent string literals) with a syntax error.
        detail = f"line {exc.editor_line}:{exc.editor_column}: {exc.message}"
        raise _too_deep_or(text, "syntax-error", f"LibCST's parser: {detail}") from exc
    except RecursionError as exc:
        raise _too_deep_or(text, "internal-error", f"LibCST's parser: {exc}") from exc
    except ValueError as exc:
        raise SourceError("syntax-error", f"{type(exc).__name__}: {exc}") from exc


def _too_deep_or(text: str, code: str, detail: str) -> SourceError:
    """``too-deeply-nested`` when the file nests DEEP_NESTING levels or more, else ``code``.

    A RecursionError (or LibCST's parser refusing code the interpreter compiles) on a deep file is the
    input's limit, reported like the size and time limits; on a file of ordinary depth it is a bug.
    """
    depth = nesting_depth(text)
    if depth >= DEEP_NESTING:
        return SourceError("too-deeply-nested", f"{depth} levels of nesting ({detail})"[:500])
    return SourceError(code, detail[:500])


def _check_compiles(text: str, path: str) -> ast.Module:
    """CPython's tree of ``text``; refuse a file the interpreter itself rejects, even where LibCST's more
    lenient parser accepts it.

    ``compile`` (not only ``ast.parse``) also runs the compiler's checks ("too many statically nested
    blocks"); a file that does not compile cannot be run, so no rewrite of it could be checked.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text, path)
            compile(tree, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise SourceError("syntax-error", f"line {exc.lineno}: {exc.msg}") from exc
    except (ValueError, RecursionError, MemoryError) as exc:
        raise SourceError("syntax-error", f"{type(exc).__name__}: {exc}") from exc
    assert isinstance(tree, ast.Module)
    return tree


def _python_accepts(text: str) -> bool:
    """Whether the running interpreter's own parser accepts ``text`` (it is stricter than LibCST's)."""
    try:
        with warnings.catch_warnings():
            # Invalid escape sequences in the user's code are not our business here.
            warnings.simplefilter("ignore")
            ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _check_output(original: str, output: str) -> None:
    """Roll back unless the output parses as well as the original did (LibCST, then CPython)."""
    try:
        cst.parse_module(output)
    except RecursionError:
        raise  # as deep as the input: judged like the input's own RecursionError
    except Exception as exc:  # any other failure to parse means "do not write this"
        raise SourceError("output-does-not-parse", f"LibCST: {exc}") from exc
    # Only demand what the input satisfied: code for a newer Python than the one running us stays
    # migratable, but if CPython accepted the input it must accept the output.
    if _python_accepts(original) and not _python_accepts(output):
        raise SourceError("output-does-not-parse", "the interpreter rejects the rewritten code")


def _uses_standard_driver(rule: PoolshiftRule) -> bool:
    """Whether the rule relies on LibCST's stock ``transform_module`` (then metadata can be shared)."""
    return (
        type(rule).transform_module is CodemodCommand.transform_module
        and not rule.should_allow_multiple_passes()
    )


def _transform_with_shared_metadata(rule: PoolshiftRule, wrapper: MetadataWrapper) -> cst.Module:
    """What ``CodemodCommand.transform_module`` does, but on a wrapper shared by the file's rules.

    LibCST's driver builds a fresh ``MetadataWrapper`` (a deep copy plus scope and qualified-name
    analysis, the dominant cost per file) for every rule. The wrapper caches resolved providers, so rules
    that run on the same unchanged tree pay for the analysis once. The import edits the rule queued in
    ``context.scratch`` are then applied exactly as LibCST's driver applies them.
    """
    with rule.resolve(wrapper):
        rule.context = replace(rule.context, wrapper=wrapper)
        try:
            tree = rule.transform_module_impl(wrapper.module)
        finally:
            rule.context = replace(rule.context, wrapper=None)
    # New imports go where isort would put them (LibCST's own visitor appends them after the block).
    if AddImportsVisitor.CONTEXT_KEY in rule.context.scratch:
        tree = _apply(GroupedAddImports(rule.context, rule.options.first_party), tree)
    if RemoveImportsVisitor.CONTEXT_KEY in rule.context.scratch:
        tree = _apply(RemoveImportsVisitor(rule.context), tree)
    return place_changed_imports(wrapper.module, tree, rule.options.first_party)


def _apply(codemod: Codemod, tree: cst.Module) -> cst.Module:
    """``codemod.transform_module(tree)``, minus the tree's deep copy when the codemod needs no metadata.

    LibCST's driver deep-copies the tree so that every node has an identity of its own for metadata to be
    keyed on (a rule may have put one node object in two places). AddImportsVisitor reads no metadata, so
    for it the copy (a walk over the whole tree) buys nothing; RemoveImportsVisitor does
    read scope metadata, so it keeps LibCST's driver and its copy.
    """
    if codemod.get_inherited_dependencies() or codemod.should_allow_multiple_passes():
        return codemod.transform_module(tree)
    wrapper = MetadataWrapper(tree, unsafe_skip_copy=True)
    with codemod.resolve(wrapper):
        codemod.context = replace(codemod.context, wrapper=wrapper)
        try:
            return codemod.transform_module_impl(wrapper.module)
        finally:
            codemod.context = replace(codemod.context, wrapper=None)


def _run_rules(
    module: cst.Module,
    rules: Sequence[type[PoolshiftRule]],
    *,
    path: str,
    options: RuleOptions,
    module_name: str | None,
    package_name: str | None,
) -> tuple[str, list[Site]]:
    """Run the rules in order, each on the previous one's output; returns the final code and all sites.

    Every site is returned in the coordinates of ``module`` (the user's file), whatever earlier rules did
    to the text the recording rule saw (see :class:`PositionMap`).
    """
    sites: list[Site] = []
    code = original_code = module.code
    positions: PositionMap | None = None  # from the current intermediate code to the original one
    # Built lazily and reused while the tree is unchanged (see _transform_with_shared_metadata). The
    # module is ours (parsed here, never handed out), so skipping LibCST's defensive copy is safe.
    wrapper: MetadataWrapper | None = None
    for rule_class in rules:
        # A fresh context per rule: CodemodContext.scratch carries AddImports/RemoveImports requests,
        # and sharing it would replay one rule's import edits inside the next rule.
        context = CodemodContext(filename=path, full_module_name=module_name, full_package_name=package_name)
        context.scratch[SUPPRESSIONS_KEY] = MARKER in original_code
        rule = rule_class(context, options)
        try:
            if _uses_standard_driver(rule):
                wrapper = wrapper or MetadataWrapper(module, unsafe_skip_copy=True)
                new_module = _transform_with_shared_metadata(rule, wrapper)
            else:
                new_module = rule.transform_module(module)
        except SkipFile:
            # The rule declined the whole file: nothing of it was applied, so only its reports stand.
            rule_sites = [site for site in rule.sites if site.status == "reported"]
            new_module = module
        except (FileTimeout, MemoryError):
            raise  # the file's limits, not the rule's fault
        except RecursionError as exc:  # LibCST's analysis of a deep file, or a rule recursing forever
            detail = f"{rule_class.RULE_ID}: {type(exc).__name__}: {exc}"
            raise _too_deep_or(original_code, "rule-crashed", detail) from exc
        except Exception as exc:
            raise SourceError("rule-crashed", f"{rule_class.RULE_ID}: {type(exc).__name__}: {exc}") from exc
        else:
            rule_sites = rule.sites
        sites.extend(rule_sites if positions is None else [positions.site(site) for site in rule_sites])
        new_code = new_module.code
        # Generating code is far cheaper than re-analysing: keep the analysed tree when nothing changed.
        if new_code != code:
            module, code, wrapper = new_module, new_code, None
            positions = PositionMap(original_code, code) if code != original_code else None
    return code, sites


def _rewrite(
    text: str,
    source: SourceText,
    data: bytes,
    rules: Sequence[type[PoolshiftRule]],
    *,
    path: str,
    options: RuleOptions,
    module_name: str | None,
    package_name: str | None,
) -> tuple[bytes | None, list[Site]]:
    """LibCST's part of :func:`transform_bytes`, run in the deep thread: the new bytes (or None), sites."""
    module = _parse(text)
    new_text, sites = _run_rules(
        module, rules, path=path, options=options, module_name=module_name, package_name=package_name
    )
    sites, unused = apply_suppressions(text, sites, [rule.RULE_ID for rule in rules])
    sites += [Site.unused_suppression(path, suppression) for suppression in unused]
    # ``new_text`` is LibCST's rendering of the tree, which may differ from the file (``except A :``
    # loses its space, LibCST issue 1457) even when no rule changed anything: the file is unchanged.
    # (Not ``not in (text, module.code)``: that would render every file again.)
    if new_text == text or new_text == module.code:  # noqa: PLR1714
        return None, sites
    if module.code != text:
        # Then part of the diff would be LibCST's doing, not a rule's: never write that.
        raise SourceError("output-does-not-parse", "LibCST does not reproduce this file exactly")
    _check_output(text, new_text)
    output = _encode(new_text, source)
    return (None if output == data else output), sites


def transform_bytes(
    data: bytes,
    rules: Sequence[type[PoolshiftRule]],
    *,
    path: str,
    options: RuleOptions | None = None,
    dry_run: bool = False,
    module_name: str | None = None,
    package_name: str | None = None,
    limits: Limits | None = None,
) -> FileResult:
    """Run ``rules`` in order over one file's bytes; never raises for a bad file or a crashing rule.

    With ``dry_run`` the rewritten bytes are still returned (``--diff`` needs them) but sites say
    ``migratable`` instead of ``migrated``: nothing has been written. With ``limits`` (the caller's
    guards; none by default), a file over ``max_bytes`` is refused before it is decoded, and one that
    is predicted not to be analysed within ``time_s`` before LibCST parses it.
    """
    options = options or RuleOptions()
    max_bytes, time_s = (limits.max_bytes, limits.time_s) if limits is not None else (0, 0.0)
    text = ""
    try:
        if max_bytes and len(data) > max_bytes:
            raise SourceError("file-too-large", f"{len(data)} bytes, over the limit of {max_bytes}")
        source = decode_source(data)
        text = rules_text(source)
        # In this thread, with the interpreter's own recursion limit (which bounds what compiles): the
        # deep thread's raised limit must not make a file compile that the user's Python refuses.
        too_slow = predicted_timeout(measure(text, _check_compiles(text, path)), time_s)
        if too_slow is not None:
            raise SourceError("timeout", too_slow)
        rewrite = functools.partial(
            _rewrite, text, source, data, rules, path=path, options=options, module_name=module_name,
            package_name=package_name,
        )  # fmt: skip
        output, sites = run_deep(rewrite)
    except SourceError as exc:
        return FileResult(path=path, original=data, output=None, error=exc.code, error_detail=exc.detail)
    except FileTimeout as exc:
        return FileResult(path=path, original=data, output=None, error="timeout", error_detail=str(exc))
    except MemoryError:
        detail = "out of memory while analysing the file"
        return FileResult(path=path, original=data, output=None, error="memory-limit", error_detail=detail)
    except RecursionError as exc:  # LibCST rendering or re-parsing a deep tree, or a bug of ours
        error = _too_deep_or(text, "internal-error", f"{type(exc).__name__}: {exc}")
        return FileResult(path=path, original=data, output=None, error=error.code, error_detail=error.detail)
    except Exception as exc:  # one file's crash is never the run's
        detail = f"{type(exc).__name__}: {exc}"[:500]
        return FileResult(path=path, original=data, output=None, error="internal-error", error_detail=detail)
    if dry_run:
        sites = [replace(site, status="migratable") if site.status == "migrated" else site for site in sites]
    return FileResult(path=path, original=data, output=output, sites=sites)
