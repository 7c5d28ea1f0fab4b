# The one command to run the tests is `make test` (CI runs it via .ci/run).
GO ?= go

.PHONY: test vet unit race bench fuzz

test: vet race

vet:
	$(GO) vet ./...

# Every package under the race detector; -short is not used, so the
# kill -9 crash tests run too.
race:
	$(GO) test -race -count=1 -timeout 25m ./...

unit:
	$(GO) test -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzBatchSetRepr -fuzztime 60s ./engine/
