# Rekor inclusion verified: each required attestation verifies (signature over the exact
# bytes, for the expected identity) and its log entry's inclusion proof verifies against a
# signed checkpoint.
package cihub.rekor

default allow := false

allow if count(reasons) == 0

names contains att.name if some att in input.attestations

reasons contains msg if {
	some name in data.cihub_config.required_attestations
	not names[name]
	msg := sprintf("rekor: no %s attestation", [name])
}

# `== true`, not truthiness: a hostile input's "yes" is not a verified signature.
verified(att) if att.verified == true

included(att) if att.inclusion_verified == true

reasons contains msg if {
	some att in input.attestations
	not verified(att)
	msg := sprintf("rekor: %s: does not verify: %s", [att.name, object.get(att, "reason", "no reason")])
}

reasons contains msg if {
	some att in input.attestations
	not included(att)
	msg := sprintf("rekor: %s: inclusion proof not verified", [att.name])
}
