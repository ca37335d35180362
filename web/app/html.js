// The one place views get their template tag: htm bound to Preact's h().
import { h } from "preact";
import htm from "htm";

export const html = htm.bind(h);
