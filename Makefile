# The one command to run the tests is `make test` (CI runs it via .ci/run).
GO ?= go

.PHONY: test vet unit race norace bench fuzz build

test: vet race norace

vet:
	$(GO) vet ./...

# Every package under the race detector; -short is not used, so the
# kill -9 crash tests run too.
race:
	$(GO) test -race -count=1 -timeout 25m ./...

# The tests that move a member to a new address, without the race
# detector: hashicorp/raft v1.8.0 races on a peer's address change
# (hashicorp/raft#681), so they skip that part under -race.
norace:
	$(GO) test -count=1 -run 'TestUpdateMemberAddress|TestMemberAddVoterUpdate|TestMemberMove' ./replication/ ./server/ ./test/robustness/

unit:
	$(GO) test -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzBatchSetRepr -fuzztime 60s ./engine/

# The server binary as etcd's releases are built: static, without cgo.
# cgo would link libc and start the runtime's threads through it, which
# costs a member about 6 MiB of resident memory at idle (docs/performance.md,
# "The binary").
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o strata ./cmd/strata
