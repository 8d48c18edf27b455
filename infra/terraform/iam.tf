# Least privilege (DESIGN I5): the grants that touch tokens are bound on one resource each (the
# secret, the topic, a subscription, the function's Cloud Run service), never on the project. The
# project-level grants carry no access to tokens: the build account's logs/images (and its source
# read, conditioned to one bucket), and the VM accounts' log and metric writing for the Ops Agent.

resource "google_service_account" "function" {
  project      = var.project_id
  account_id   = local.names.function_account_id
  display_name = "${var.name_prefix}: cloud function (refreshes the Saxo token)"
  depends_on   = [google_project_service.api]
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = local.names.scheduler_account_id
  display_name = "${var.name_prefix}: scheduler (OIDC identity that invokes the function)"
  depends_on   = [google_project_service.api]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = local.names.build_account_id
  display_name = "${var.name_prefix}: function build (Cloud Build)"
  depends_on   = [google_project_service.api]
}

# One account per VM unless the VM already runs as one (var.existing_vm_service_accounts).
resource "google_service_account" "vm" {
  for_each     = toset([for v in var.vm_names : v if !contains(keys(var.existing_vm_service_accounts), v)])
  project      = var.project_id
  account_id   = local.names.vm_account_ids[each.key]
  display_name = "${var.name_prefix}: agent on VM ${each.key}"
  depends_on   = [google_project_service.api]
}

data "google_project" "this" {
  project_id = var.project_id
  depends_on = [google_project_service.api]
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
  build_member = "serviceAccount:${google_service_account.build.email}"
  # Gen2 builds do not read our bucket directly: Cloud Functions copies the object into this
  # Google-created bucket and Cloud Build fetches it from there ("failed to Fetch ... Access to
  # bucket gcf-v2-sources-<number>-<region> denied" otherwise).
  gcf_sources_bucket = "gcf-v2-sources-${data.google_project.this.number}-${var.region}"
}

# Exactly the Secret Manager calls the code makes (core/gcp/secret-store.ts: client.<method>(...)).
# test/unit/infra-iam.test.ts derives this list from the code and fails on any difference.
# Role ids are project-global (and a deleted one stays reserved for ~37 days): derived from
# name_prefix so a second instance of this module gets its own.
resource "google_project_iam_custom_role" "token_secret" {
  project     = var.project_id
  role_id     = local.names.custom_role_id
  title       = "${var.name_prefix} secret rotator"
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
  count     = var.use_app_secret ? 1 : 0
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

# `token-keeper doctor` on the VM reads which topic the subscription is attached to, its ack
# deadline and retention, and that the topic exists (subscriptions.get / topics.get): neither the
# subscriber nor the publisher role includes *.get. Pub/Sub Viewer on those two resources only.
resource "google_pubsub_subscription_iam_member" "vm_viewer" {
  for_each     = local.vm_sa_email
  project      = var.project_id
  subscription = google_pubsub_subscription.vm[each.key].name
  role         = "roles/pubsub.viewer"
  member       = "serviceAccount:${each.value}"
}

resource "google_pubsub_topic_iam_member" "vm_viewer" {
  for_each = local.vm_sa_email
  project  = var.project_id
  topic    = google_pubsub_topic.token_rotated.name
  role     = "roles/pubsub.viewer"
  member   = "serviceAccount:${each.value}"
}

# The Ops Agent on each VM writes the agent's journald lines (its ALERT events) and host metrics
# with the VM's account; without these the alert policy can never fire for the VM side. Logging
# and Monitoring have no narrower resource to bind on than the project.
resource "google_project_iam_member" "vm_ops_agent" {
  for_each = var.grant_vm_ops_agent_roles ? {
    for pair in setproduct(var.vm_names, ["roles/logging.logWriter", "roles/monitoring.metricWriter"]) :
    "${pair[0]} ${pair[1]}" => { vm = pair[0], role = pair[1] }
  } : {}
  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${local.vm_sa_email[each.value.vm]}"
}

# Only the scheduler's account may invoke the function (never allUsers / allAuthenticatedUsers).
resource "google_cloud_run_v2_service_iam_member" "scheduler_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.refresh.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# The build account. Followed: Google's "Set build service account" page for functions
# (cloud.google.com/run/docs/configuring/services/build-service-account), which lists Logs Writer,
# Artifact Registry Writer and Storage Object Admin "for retrieving the function source from the
# Cloud Storage bucket". Its newer text offers roles/run.builder on the project instead; we keep
# the three roles because the storage one can then be scoped to the source buckets rather than
# every bucket in the project.
resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/artifactregistry.writer",
    "roles/logging.logWriter",
  ])
  project = var.project_id
  role    = each.value
  member  = local.build_member
}

# Storage Object Admin (as documented) on our source bucket only: a bucket-level binding.
resource "google_storage_bucket_iam_member" "build_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectAdmin"
  member = local.build_member
}

# ... and on the gcf-v2-sources bucket Cloud Build really fetches from. Google creates that bucket
# during the first function deploy, so a bucket-level binding cannot exist before the build needs
# it; a project binding with an IAM condition naming that one bucket grants the same and nothing
# more (no other bucket in the project is readable).
resource "google_project_iam_member" "build_gcf_sources" {
  project = var.project_id
  role    = "roles/storage.objectAdmin"
  member  = local.build_member

  condition {
    title       = "${var.name_prefix}-gcf-v2-sources-only"
    description = "Function source copied by Cloud Functions for the build"
    expression  = "resource.name == \"projects/_/buckets/${local.gcf_sources_bucket}\" || resource.name.startsWith(\"projects/_/buckets/${local.gcf_sources_bucket}/\")"
  }
}

# IAM is eventually consistent (typically under a minute): a build or a function start that runs
# right after its grants can still be refused. Waiting once on create makes the first apply pass.
resource "time_sleep" "iam_propagation" {
  create_duration = "60s"

  depends_on = [
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_source,
    google_project_iam_member.build_gcf_sources,
    google_secret_manager_secret_iam_member.app_secret_function,
    google_secret_manager_secret_iam_member.token,
  ]
}
