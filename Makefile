# Build targets for the enforcer.
#   make azure-npm          single-file executable: output/azure-npm (a shiv zipapp, dependencies vendored;
#                           compiled ones such as pydantic-core are unpacked to ~/.shiv or $$SHIV_ROOT on first run)
#   make azure-npm-archive  output/azure-npm-$(VERSION)-linux.tar.gz holding that executable
#   make azure-npm-image    container image $(IMAGE):$(VERSION) (imagebuild/build.py): docker where its daemon
#                           answers, else podman or buildah (ENGINE=...); the Debian base is made with
#                           debootstrap (root), no image registry needed; reused when the sources are unchanged
#   make azure-npm-image-lock  re-resolve the image's Python dependencies (imagebuild/requirements.txt)
PYTHON ?= python3
OUTPUT ?= output
VERSION ?= $(shell $(PYTHON) -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
IMAGE ?= azure-npm
ENGINE ?= auto

.PHONY: azure-npm azure-npm-archive azure-npm-image azure-npm-image-lock clean

azure-npm: $(OUTPUT)/azure-npm

$(OUTPUT)/azure-npm: pyproject.toml $(shell find npm -name '*.py' -o -name '*.yaml' -o -name '*.json' 2>/dev/null)
	mkdir -p $(OUTPUT)
	$(PYTHON) -m shiv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check shiv
	# The package and every dependency in one file; a zipapp can't import C extensions from the
	# archive itself, so shiv unpacks them once (per build) into ~/.shiv (or $$SHIV_ROOT).
	# It starts with the node's python3, but its compiled modules load only on the build's Python:
	# the preamble (run before anything is imported) refuses any other version with a clear message.
	$(PYTHON) -m shiv --quiet --compressed --reproducible --python "/usr/bin/env python3" \
		--preamble npm/cli/zipapp_preamble.py \
		--entry-point npm.cli:main --output-file $@ . --disable-pip-version-check
	@echo "built $@"

azure-npm-archive: $(OUTPUT)/azure-npm
	tar -C $(OUTPUT) -czf $(OUTPUT)/azure-npm-$(VERSION)-linux.tar.gz azure-npm
	@echo "built $(OUTPUT)/azure-npm-$(VERSION)-linux.tar.gz"

azure-npm-image:
	$(PYTHON) -m imagebuild.build --image $(IMAGE):$(VERSION) --engine $(ENGINE) $(IMAGE_FLAGS)

azure-npm-image-lock:
	$(PYTHON) -m imagebuild.build --lock

clean:
	rm -rf $(OUTPUT)
