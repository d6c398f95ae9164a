"""The back office: server-rendered pages under ``/admin`` to configure endpoints, principals and audit."""
