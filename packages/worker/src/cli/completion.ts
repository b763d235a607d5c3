import type { Command } from "commander";
import { IiiError } from "../errors.js";
import { WORKER_NAME_COMMANDS } from "./program.js";

interface CommandShape {
  names: string[];
  options: string[];
}

/** The visible commands (with aliases) and each one's flags, read from the program itself. */
function shapes(program: Command): CommandShape[] {
  return program.commands
    .filter((c) => !c.name().startsWith("__"))
    .map((c) => ({
      names: [c.name(), ...c.aliases()],
      options: [...c.options.filter((o) => !o.hidden).flatMap((o) => [o.short, o.long]), "--help"].filter((f): f is string => !!f),
    }));
}

/**
 * Bash: completes commands, each command's flags, worker names (from `iii-worker list -q`) for the commands that
 * take them, directories for `dev`; for `iii-worker …` and `iii worker …` alike. Zsh runs the same function
 * through bashcompinit.
 */
function bashScript(program: Command): string {
  const commands = shapes(program);
  const globals = program.options.filter((o) => !o.hidden).flatMap((o) => [o.short, o.long]).filter(Boolean).concat("--help");
  const cases = commands.map((c) => `    ${c.names.join("|")}) opts="${c.options.join(" ")}" ;;`).join("\n");
  const named = commands.filter((c) => WORKER_NAME_COMMANDS.includes(c.names[0]!)).flatMap((c) => c.names).join("|");
  return `# iii-worker completion for bash: source <(iii-worker completion bash)
_iii_worker() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" base=1 cmd="" opts="" i
  if [[ "\${COMP_WORDS[0]##*/}" == iii ]]; then
    if [[ $COMP_CWORD -eq 1 ]]; then COMPREPLY=( $(compgen -W "worker" -- "$cur") ); return; fi
    [[ "\${COMP_WORDS[1]}" == worker ]] || return
    base=2
  fi
  for (( i = base; i < COMP_CWORD; i++ )); do
    case "\${COMP_WORDS[i]}" in
      --) return ;;
      -*) ;;
      *) cmd="\${COMP_WORDS[i]}"; break ;;
    esac
  done
  if [[ -z "$cmd" ]]; then
    COMPREPLY=( $(compgen -W "${commands.map((c) => c.names.join(" ")).join(" ")} ${globals.join(" ")}" -- "$cur") )
    return
  fi
  case "$cmd" in
${cases}
  esac
  if [[ "$cur" == -* ]]; then COMPREPLY=( $(compgen -W "$opts" -- "$cur") ); return; fi
  case "$cmd" in
    ${named}) COMPREPLY=( $(compgen -W "$(command iii-worker list -q 2>/dev/null)" -- "$cur") ) ;;
    dev) COMPREPLY=( $(compgen -d -- "$cur") ) ;;
    completion) COMPREPLY=( $(compgen -W "bash zsh" -- "$cur") ) ;;
  esac
}
complete -F _iii_worker iii-worker iii
`;
}

export function completionScript(shell: string, program: Command): string {
  if (shell === "bash") return bashScript(program);
  if (shell === "zsh") {
    return `#compdef iii-worker iii
# iii-worker completion for zsh: source <(iii-worker completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bashScript(program)}`;
  }
  throw new IiiError("UsageError", `completion: unknown shell "${shell}": expected bash or zsh`);
}
