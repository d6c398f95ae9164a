"""Security suite: authentication, scopes, OAuth grants, revocation, key rotation and secret storage."""
