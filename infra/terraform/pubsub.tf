resource "google_pubsub_topic" "token_rotated" {
  project = var.project_id
  name    = local.names.topic_id

  # Events carry no token material, only version/generation/expiry; a day is plenty.
  message_retention_duration = "86400s"

  depends_on = [google_project_service.api]
}

# One subscription per VM: every agent must see every rotation.
resource "google_pubsub_subscription" "vm" {
  for_each = toset(var.vm_names)
  project  = var.project_id
  name     = local.names.subscriptions[each.key]
  topic    = google_pubsub_topic.token_rotated.id

  ack_deadline_seconds = 30
  # A rotation older than the refresh token's life (~60 min) is useless to a VM that was down.
  message_retention_duration = "3600s"

  # Never garbage-collect the subscription of a VM that was off for a while.
  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "5s"
    maximum_backoff = "60s"
  }
}
