# The token secret. Its payload (versions) is written by `token-keeper login`, the bots, the agent and
# the function - never by Terraform, so no token ever lands in Terraform state.
resource "google_secret_manager_secret" "token" {
  project   = var.project_id
  secret_id = var.token_secret_id

  labels = {
    app = var.name_prefix
  }

  replication {
    auto {}
  }

  lifecycle {
    # The cross-host lease and failure counters live in the annotations; an apply must not wipe them.
    ignore_changes = [annotations]
  }

  depends_on = [google_project_service.api]
}

# Optional: the Saxo app secret kept apart from the rotating token payload.
resource "google_secret_manager_secret" "app_secret" {
  count     = var.app_secret_secret_id == "" ? 0 : 1
  project   = var.project_id
  secret_id = var.app_secret_secret_id

  labels = {
    app = var.name_prefix
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}
