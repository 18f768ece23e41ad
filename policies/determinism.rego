# Determinism: the dual build reproduced the artifacts bit for bit (empty diff).
package cihub.determinism

default allow := false

allow if count(reasons) == 0

reasons contains "determinism: no dual-build result in the input" if not input.determinism

reasons contains msg if {
	input.determinism.verdict != "reproducible"
	msg := sprintf("determinism: the dual build found %s", [input.determinism.verdict])
}

# `== true`, not truthiness: a hostile input's "yes" is not an empty diff.
diff_empty if input.determinism.diff_empty == true

reasons contains "determinism: the diff of the two builds is not empty" if {
	input.determinism
	not diff_empty
}
