# Required referrers present: the pushed artifact carries one OCI referrer of each required
# artifact type (CycloneDX SBOM, OpenVEX, in-toto attestation, Sigstore bundle v0.3), as read
# back from the registry.
package cihub.referrers

default allow := false

allow if count(reasons) == 0

present(t) if {
	some r in input.referrers
	r.artifactType == t
}

reasons contains msg if {
	some t in data.cihub_config.required_referrers
	not present(t)
	msg := sprintf("referrers: no %s referrer attached to the artifact", [t])
}
