# The token secret. Its payload (versions) is written by `token-keeper login`, the bots, the agent and
# the function - never by Terraform, so no token ever lands in Terraform state.
resource "google_secret_manager_secret" "token" {
  project   = var.project_id
  secret_id = local.names.token_secret_id

  labels = {
    app = var.name_prefix
  }

  replication {
    auto {}
  }

  lifecycle {
    # The cross-host lease and failure counters live in the annotations; an apply must not wipe them.
    ignore_changes = [annotations]
    # Deleting the secret deletes every token version: the chain dies and a person must log in again.
    # A plan that would replace it (an imported secret with another replication policy, a renamed
    # token_secret_id) fails here instead; see docs/OPERATIONS.md, first deployment, step 3.
    prevent_destroy = true
  }

  depends_on = [google_project_service.api]
}

# Optional: the Saxo app secret kept apart from the rotating token payload. The function resolves it
# at start-up, so its first version must exist before the function is created: the first deployment
# creates the secrets with a targeted apply, adds the value, then applies the rest
# (docs/OPERATIONS.md). Terraform never holds the value.
resource "google_secret_manager_secret" "app_secret" {
  count     = var.use_app_secret ? 1 : 0
  project   = var.project_id
  secret_id = local.names.app_secret_id

  labels = {
    app = var.name_prefix
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}
