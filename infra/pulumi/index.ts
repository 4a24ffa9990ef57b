export { GatewayDns, cloudflareContent, recordResourceName, type GatewayDnsArgs } from "./gatewayDns";
export { GatewayHost, type GatewayHostArgs } from "./gatewayHost";
