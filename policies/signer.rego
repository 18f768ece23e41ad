# Signer identity and issuer allowlist: every signature of the release (the artifact's and each
# attestation's) was made by an identity on `cihub_config.signers`, certified by its issuer.
package cihub.signer

default allow := false

allow if count(reasons) == 0

allowed(s) if {
	some a in data.cihub_config.signers
	a.identity == s.identity
	a.issuer == s.issuer
}

reasons contains "signer: no attestations to check the signer of" if {
	count(object.get(input, "attestations", [])) == 0
}

reasons contains msg if {
	some att in input.attestations
	not att.signer
	msg := sprintf("signer: %s: no signer identity", [att.name])
}

reasons contains msg if {
	some att in input.attestations
	not allowed(att.signer)
	msg := sprintf(
		"signer: %s: signed by %s (%s), not an allowed identity",
		[att.name, att.signer.identity, att.signer.issuer],
	)
}
