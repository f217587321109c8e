"""Onboarding a CRM export as a source: ``mlsys source new`` writes the folder (``scaffold``),
``mlsys source check`` says in plain words what is still missing (``check``); ``sources``
finds the source folders and reads their env files. The guide is docs/onboarding.md."""
