"""Who may do what: the registry's credentials, client tokens and their scope maps, and the
audit log.

- `credentials`: the admin's credentials (secrets.json, users.json) and the Authenticator
  that turns an Authorization header into an Identity (the admin's or a token's);
- `scopes`: scope maps (repository pattern -> actions) and how a token's grants match;
- `tokens`: the token operations (create, list, disable, enable, rotate, delete);
- `audit`: the audit log.

Import the module you need (`registry_core.access.tokens`); this package imports nothing, so
that any core module may use one of them without pulling in the others.
"""
