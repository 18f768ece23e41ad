# The workflow guard over the subject's .github/workflows: actions pinned by a full commit SHA,
# no long-lived secrets (OIDC instead), `id-token: write` only in jobs that sign or publish,
# and no zizmor finding of a denied severity.
package cihub.workflows

default allow := false

allow if count(reasons) == 0

pinned(uses) if startswith(uses, "./")

pinned(uses) if {
	startswith(uses, "docker://")
	contains(uses, "@sha256:")
}

pinned(uses) if regex.match(`^[^@\s]+@[0-9a-f]{40}$`, uses)

reasons contains msg if {
	some wf in input.workflows.files
	some job in wf.jobs
	some uses in job.uses
	not pinned(uses)
	msg := sprintf("workflows: %s: job %s: %s is not pinned by a full commit SHA", [wf.path, job.id, uses])
}

reasons contains msg if {
	some wf in input.workflows.files
	some job in wf.jobs
	some secret in job.secrets
	not secret in data.cihub_config.short_lived_secrets
	msg := sprintf("workflows: %s: job %s: reads the long-lived secret %s (use OIDC)", [wf.path, job.id, secret])
}

needs_id_token(job) if {
	some uses in job.uses
	some action in data.cihub_config.oidc_actions
	startswith(uses, concat("", [action, "@"]))
}

needs_id_token(job) if {
	some command in job.run
	some known in data.cihub_config.oidc_commands
	contains(command, known)
}

reasons contains msg if {
	some wf in input.workflows.files
	some job in wf.jobs
	job.id_token_write
	not needs_id_token(job)
	msg := sprintf("workflows: %s: job %s: id-token: write but it neither signs nor publishes", [wf.path, job.id])
}

reasons contains msg if {
	some finding in input.workflows.zizmor
	finding.severity in data.cihub_config.zizmor_deny_severities
	msg := sprintf("workflows: zizmor %s (%s): %s", [finding.ident, finding.severity, finding.location])
}
