"""Generic LibCST helpers the rules share: syntax questions, literal values, call arguments, imports.

Nothing here knows about poolshift's rules, legacy helpers or reason codes; it answers questions about
any Python module (which functions are module-level, what a literal evaluates to, which imports a rewrite
frees) and edits imports without losing comments. Everything else in ``codemods`` may import it; it
imports nothing from ``codemods``.
"""
