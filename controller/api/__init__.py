"""The northbound REST API (FastAPI): apps, inventory, devices, policies, events, and the
reference framework's route table, over the controller's object store.

Layout: `app` (the factory), `routes_*` (thin handlers), `apps` and `views` (what they do and
answer), `auth` and `tokens` (bearer tokens and roles), `limits` (body size), `errors` (the one
error → HTTP table), `ports` (the typed interfaces of what the API drives besides the store),
`bridge` and `policies` (their adapters), `server` (the composition root), `daemon` (flags and
config file; `__main__` checks the extra first), `openapi` (the committed document), `cli`
(`mlsysops api ...`), `client` (the CLI's remote mode), `console` and `console_sessions` (the
web console under /console/, its templates and static files beside them).
"""
