"""Request parsing: raw query strings and bodies → typed requests that know no SQL."""
