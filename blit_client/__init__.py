"""blit_client: the `blit` CLI, its route orchestration and the control-plane client."""
