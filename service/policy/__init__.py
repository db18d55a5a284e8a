"""Policy files: loading, validation and the backend-neutral form they compile to."""
