//! CloudFormation stacks on the emulator (filled in by its issue).
