"""dxapi."""
