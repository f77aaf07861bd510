/** A WhatsApp bubble with the template's body; {{1}} shows as the lead field a rule maps it to. */
import { useTranslation } from "react-i18next";
import type { HSMTemplate } from "../types/marketing";

export function bodyOf(template: HSMTemplate): string {
  if (template.body_text) return template.body_text;
  const body = template.components.find((c) => c.type?.toUpperCase() === "BODY");
  return body?.text ?? "";
}

/** Splits "Hola {{1}}" into text and placeholders, each placeholder labelled by its mapped field. */
export function renderBody(text: string, variables: Record<string, string>, fallback: (key: string) => string) {
  return text.split(/(\{\{\s*[\w.]+\s*\}\})/g).map((part, i) => {
    const match = part.match(/^\{\{\s*([\w.]+)\s*\}\}$/);
    if (!match) return <span key={i}>{part}</span>;
    const key = match[1];
    return <mark key={i} className="variable" title={`{{${key}}}`}>{variables[key] ?? fallback(key)}</mark>;
  });
}

export function TemplatePreview({ template, variables = {} }: { template: HSMTemplate; variables?: Record<string, string> }) {
  const { t } = useTranslation();
  const header = template.components.find((c) => c.type?.toUpperCase() === "HEADER" && c.text);
  const footer = template.components.find((c) => c.type?.toUpperCase() === "FOOTER");
  return (
    <div className="wa-bubble" aria-label={t("hsm.previewOf", { name: template.name })}>
      {header?.text && <p className="wa-header">{renderBody(header.text, variables, (key) => `{{${key}}}`)}</p>}
      <p className="wa-body">{renderBody(bodyOf(template), variables, (key) => `{{${key}}}`)}</p>
      {footer?.text && <p className="wa-footer">{footer.text}</p>}
    </div>
  );
}
