package commandrun.exitcode

import rego.v1

# The command the step ran (the image build and push) must have succeeded. A missing exit code
# denies too.
deny contains msg if {
	not input.exitcode == 0
	msg := sprintf("the build command did not exit with 0: %v", [object.get(input, "exitcode", "none recorded")])
}
