// Small helpers for what the CLI prints to people.

/** "1 job", "3 jobs"; `many` for irregular plurals. */
export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;
