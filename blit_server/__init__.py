"""blit_server: the `blitd` daemon (control plane, sessions, data-plane listener)."""
