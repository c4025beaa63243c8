"""The agent's desktop (坐席工作台): the page `contactcenter run` serves to work the call it holds."""
