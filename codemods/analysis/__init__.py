"""Program analysis the rules share, kept out of ``codemods/rules/`` (which holds one rule per module).

Nothing here rewrites a file on its own: these modules answer questions (what does this name resolve to,
is this legacy helper equivalent to the shim, which imports become unused, is this seed pattern safe to
rewrite) and provide the shared machinery (:class:`~codemods.analysis.redirect.RedirectCallRule`,
:class:`~codemods.analysis.import_pruning.ImportPruner`) that the rules in ``codemods/rules/`` build on.
Each module has one job; its docstring says which rules use it and why it is shared.
"""
