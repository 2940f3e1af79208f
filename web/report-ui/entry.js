// The parts of Apache ECharts the HTML report uses, exposed as the global
// `echarts`: the sunburst, its tooltip, and the SVG renderer (crisp when
// printed, and its shapes are in the DOM for the browser tests to find).
import * as echarts from 'echarts/core';
import { SunburstChart } from 'echarts/charts';
import { TooltipComponent } from 'echarts/components';
import { SVGRenderer } from 'echarts/renderers';

echarts.use([SunburstChart, TooltipComponent, SVGRenderer]);

globalThis.echarts = echarts;
