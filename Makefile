# The two commands of the README, plus the demo's off switch.
.PHONY: demo demo-down test
demo:
	./hack/demo.sh
demo-down:
	./hack/demo.sh down
test:
	./hack/test.sh
