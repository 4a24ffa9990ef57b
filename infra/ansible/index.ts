export * from "./inventory";
export * from "./playbook";
