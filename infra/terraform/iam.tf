# Least privilege (DESIGN I5): every grant below is bound on one resource (the secret, the topic, a
# subscription, the function's Cloud Run service), never on the project. The only project-level
# grants are the build account's, which need no access to tokens.

resource "google_service_account" "function" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-fn"
  display_name = "token-keeper cloud function (refreshes the Saxo token)"
  depends_on   = [google_project_service.api]
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-sched"
  display_name = "token-keeper scheduler (OIDC identity that invokes the function)"
  depends_on   = [google_project_service.api]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "token-keeper function build (Cloud Build)"
  depends_on   = [google_project_service.api]
}

# One account per VM unless the VM already runs as one (var.existing_vm_service_accounts).
resource "google_service_account" "vm" {
  for_each     = toset([for v in var.vm_names : v if !contains(keys(var.existing_vm_service_accounts), v)])
  project      = var.project_id
  account_id   = substr("${var.name_prefix}-${each.key}", 0, 30)
  display_name = "token-keeper agent on VM ${each.key}"
  depends_on   = [google_project_service.api]
}

locals {
  vm_sa_email = merge(
    { for v, sa in google_service_account.vm : v => sa.email },
    { for v, email in var.existing_vm_service_accounts : v => email if contains(var.vm_names, v) },
  )
  token_secret_members = merge(
    { function = "serviceAccount:${google_service_account.function.email}" },
    { for v, email in local.vm_sa_email : "vm-${v}" => "serviceAccount:${email}" },
  )
}

# Exactly the Secret Manager calls the code makes (core/gcp/secret-store.ts: client.<method>(...)).
# test/unit/infra-terraform.test.ts derives this list from the code and fails on any difference.
resource "google_project_iam_custom_role" "token_secret" {
  project     = var.project_id
  role_id     = "tokenKeeperSecretRotator"
  title       = "token-keeper secret rotator"
  description = "Read, add, list and destroy versions of the token secret; CAS-update its annotations (lease)."
  permissions = [
    "secretmanager.secrets.get",
    "secretmanager.secrets.update",
    "secretmanager.versions.access",
    "secretmanager.versions.add",
    "secretmanager.versions.destroy",
    "secretmanager.versions.list",
  ]
  depends_on = [google_project_service.api]
}

# The custom role is bound on the token secret only.
resource "google_secret_manager_secret_iam_member" "token" {
  for_each  = local.token_secret_members
  project   = var.project_id
  secret_id = google_secret_manager_secret.token.secret_id
  role      = google_project_iam_custom_role.token_secret.name
  member    = each.value
}

resource "google_secret_manager_secret_iam_member" "app_secret_function" {
  count     = var.app_secret_secret_id == "" ? 0 : 1
  project   = var.project_id
  secret_id = google_secret_manager_secret.app_secret[0].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function.email}"
}

# Function and agents announce rotations.
resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.token_secret_members
  project  = var.project_id
  topic    = google_pubsub_topic.token_rotated.name
  role     = "roles/pubsub.publisher"
  member   = each.value
}

# Each VM consumes only its own subscription.
resource "google_pubsub_subscription_iam_member" "vm_subscriber" {
  for_each     = local.vm_sa_email
  project      = var.project_id
  subscription = google_pubsub_subscription.vm[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${each.value}"
}

# Only the scheduler's account may invoke the function (never allUsers / allAuthenticatedUsers).
resource "google_cloud_run_v2_service_iam_member" "scheduler_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.refresh.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# The build account: what Cloud Build needs to turn the source zip into an image, nothing else.
resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/artifactregistry.writer",
    "roles/logging.logWriter",
    "roles/storage.objectViewer",
  ])
  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.build.email}"
}
